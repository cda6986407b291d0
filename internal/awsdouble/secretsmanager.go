package awsdouble

import (
	"encoding/json"
	"net/http"
	"time"
)

// secret is a Secrets Manager secret; only its current version is kept.
type secret struct {
	arn, name, value, version string
	created                   time.Time
}

// AddSecret adds a secret that callers may name by its ARN or its name.
// An ARN left empty is made up from the name.
func (c *Cloud) AddSecret(arn, name, value string) {
	if arn == "" {
		arn = "arn:aws:secretsmanager:" + c.Region + ":123456789012:secret:" + name + "-" + randomBase32()[:6]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.secret(arn); s != nil {
		s.name, s.value, s.version, s.created = name, value, requestID(), time.Now()
		return
	}
	c.secrets = append(c.secrets, &secret{arn: arn, name: name, value: value, version: requestID(), created: time.Now()})
}

// Secret is the current value of the secret named by its ARN or name.
func (c *Cloud) Secret(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.secret(id); s != nil {
		return s.value, true
	}
	return "", false
}

func (c *Cloud) secret(id string) *secret {
	for _, s := range c.secrets {
		if id != "" && (s.arn == id || s.name == id) {
			return s
		}
	}
	return nil
}

func (c *Cloud) serveSecretsManager(w http.ResponseWriter, r *http.Request, action string) {
	var req struct {
		SecretID           string `json:"SecretId"`
		SecretString       string
		ClientRequestToken string
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSONError(w, r, apiError{http.StatusBadRequest, "SerializationException", err.Error()})
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.secret(req.SecretID)
	switch {
	case action != "GetSecretValue" && action != "PutSecretValue":
		writeJSONError(w, r, apiError{http.StatusBadRequest, "UnknownOperationException", ""})
		return
	case s == nil:
		writeJSONError(w, r, apiError{http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret."})
		return
	}
	resp := map[string]any{"ARN": s.arn, "Name": s.name, "VersionStages": []string{"AWSCURRENT"}}
	if action == "PutSecretValue" {
		s.value, s.version, s.created = req.SecretString, req.ClientRequestToken, time.Now()
		if s.version == "" {
			s.version = requestID()
		}
	} else {
		resp["SecretString"] = s.value
		resp["CreatedDate"] = float64(s.created.UnixMilli()) / 1000
	}
	resp["VersionId"] = s.version
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSONError writes an error as JSON protocol services do.
func writeJSONError(w http.ResponseWriter, _ *http.Request, e apiError) {
	writeJSON(w, e.Status, map[string]string{"__type": e.Code, "Message": e.Message})
}
