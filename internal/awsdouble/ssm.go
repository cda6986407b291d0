package awsdouble

import (
	"cmp"
	"encoding/json"
	"net/http"
	"time"
)

// parameter is a Systems Manager Parameter Store parameter.
type parameter struct {
	value, kind string
	version     int
	modified    time.Time
}

// Parameter is the value of the parameter name, if it exists.
func (c *Cloud) Parameter(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.parameters[name]
	if !ok {
		return "", false
	}
	return p.value, true
}

// serveSSM answers PutParameter and GetParameter, the calls control-plane
// nodes make to record the cluster's Kubernetes version.
func (c *Cloud) serveSSM(w http.ResponseWriter, r *http.Request, action string) {
	var req struct {
		Name, Value, Type string
		Overwrite         bool
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSONError(w, r, apiError{http.StatusBadRequest, "SerializationException", err.Error()})
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parameters == nil {
		c.parameters = map[string]*parameter{}
	}
	p, exists := c.parameters[req.Name]
	switch action {
	case "PutParameter":
		switch {
		case exists && !req.Overwrite:
			writeJSONError(w, r, apiError{http.StatusBadRequest, "ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true."})
			return
		case !exists:
			p = &parameter{}
			c.parameters[req.Name] = p
		}
		p.value, p.kind, p.modified = req.Value, cmp.Or(req.Type, "String"), time.Now()
		p.version++
		writeJSON(w, http.StatusOK, map[string]any{"Version": p.version, "Tier": "Standard"})
	case "GetParameter":
		if !exists {
			writeJSONError(w, r, apiError{http.StatusBadRequest, "ParameterNotFound", ""})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"Parameter": map[string]any{
			"Name": req.Name, "Type": p.kind, "Value": p.value, "Version": p.version,
			"LastModifiedDate": float64(p.modified.UnixMilli()) / 1000,
			"ARN":              "arn:aws:ssm:" + c.Region + ":123456789012:parameter" + req.Name, "DataType": "text",
		}})
	default:
		writeJSONError(w, r, apiError{http.StatusBadRequest, "UnknownOperationException", ""})
	}
}
