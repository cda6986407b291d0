package awsdouble

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A parameter is created, refused a second create without overwrite,
// overwritten with a new version, and read back; an unknown one is
// Parameter Store's ParameterNotFound.
func TestSSMParameters(t *testing.T) {
	c := NewCloud("eu-west-1")
	call := func(action, body string) (int, string) {
		t.Helper()
		r := httptest.NewRequest("POST", "https://ssm.eu-west-1.amazonaws.com/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-amz-json-1.1")
		r.Header.Set("X-Amz-Target", "AmazonSSM."+action)
		return send(t, c, SSM, r)
	}
	const name = "/kubeha/c1/kubernetes-version"
	if code, body := call("PutParameter", `{"Name":"`+name+`","Value":"v1.35.8","Type":"String"}`); code != http.StatusOK || !strings.Contains(body, `"Version":1`) {
		t.Errorf("create: %d %s", code, body)
	}
	if code, body := call("PutParameter", `{"Name":"`+name+`","Value":"v1.36.3","Type":"String"}`); code != http.StatusBadRequest || !strings.Contains(body, "ParameterAlreadyExists") {
		t.Errorf("create again without overwrite: %d %s", code, body)
	}
	if code, body := call("PutParameter", `{"Name":"`+name+`","Value":"v1.36.3","Type":"String","Overwrite":true}`); code != http.StatusOK || !strings.Contains(body, `"Version":2`) {
		t.Errorf("overwrite: %d %s", code, body)
	}
	if code, body := call("GetParameter", `{"Name":"`+name+`"}`); code != http.StatusOK || !strings.Contains(body, `"Value":"v1.36.3"`) {
		t.Errorf("get: %d %s", code, body)
	}
	if v, ok := c.Parameter(name); !ok || v != "v1.36.3" {
		t.Errorf("Parameter: %q %v", v, ok)
	}
	if code, body := call("GetParameter", `{"Name":"/kubeha/c2/kubernetes-version"}`); code != http.StatusBadRequest || !strings.Contains(body, "ParameterNotFound") {
		t.Errorf("an unknown parameter: %d %s", code, body)
	}
}
