package awsdouble

import (
	"compress/gzip"
	"encoding/xml"
	"net"
	"net/http"
	"strings"
)

// hostName is the request's host, without a port.
func hostName(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.Host); err == nil {
		return strings.ToLower(host)
	}
	return strings.ToLower(r.Host)
}

// queryAction is the action of an AWS Query protocol request (EC2,
// CloudWatch): a form, POSTed or in the URL, with Action and Version.
func queryAction(r *http.Request) string {
	// Newer AWS CLIs gzip some request bodies, such as PutMetricData's.
	if r.Header.Get("Content-Encoding") == "gzip" {
		if body, err := gzip.NewReader(r.Body); err == nil {
			r.Body = body
			r.Header.Del("Content-Encoding")
		}
	}
	_ = r.ParseForm()
	return r.Form.Get("Action")
}

// jsonAction is the action of an AWS JSON protocol request (Secrets
// Manager), named by its X-Amz-Target header: secretsmanager.GetSecretValue.
func jsonAction(r *http.Request) string {
	target := r.Header.Get("X-Amz-Target")
	return target[strings.LastIndex(target, ".")+1:]
}

// writeXML writes v as an XML document.
func writeXML(w http.ResponseWriter, status int, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}

// queryError is the error document of Query protocol services other than
// EC2 and of Route 53.
type queryError struct {
	XMLName   xml.Name
	Type      string `xml:"Error>Type"`
	Code      string `xml:"Error>Code"`
	Message   string `xml:"Error>Message"`
	RequestID string `xml:"RequestId"`
}

func writeQueryError(w http.ResponseWriter, namespace string, e apiError) {
	kind := "Sender"
	if e.Status >= 500 {
		kind = "Receiver"
	}
	writeXML(w, e.Status, queryError{XMLName: xml.Name{Space: namespace, Local: "ErrorResponse"},
		Type: kind, Code: e.Code, Message: e.Message, RequestID: requestID()})
}
