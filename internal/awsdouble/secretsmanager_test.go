package awsdouble

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func secretsCall(t *testing.T, c *Cloud, action, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest("POST", "https://secretsmanager.eu-west-1.amazonaws.com/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "secretsmanager."+action)
	return send(t, c, SecretsManager, r)
}

// A secret is found by its ARN or its name; a put makes a new current
// version; an unknown secret is Secrets Manager's ResourceNotFoundException.
func TestSecretsManager(t *testing.T) {
	c := NewCloud("eu-west-1")
	arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:c1-etcd-a-AbCdEf"
	c.AddSecret(arn, "c1-etcd-a", `{"ca.crt":"PEM"}`)
	type value struct {
		ARN, Name, SecretString, VersionId string
		VersionStages                      []string
		CreatedDate                        float64
	}
	get := func(id string) value {
		t.Helper()
		code, body := secretsCall(t, c, "GetSecretValue", `{"SecretId": "`+id+`"}`)
		var v value
		if err := json.Unmarshal([]byte(body), &v); code != http.StatusOK || err != nil {
			t.Fatalf("GetSecretValue %s: %d %s", id, code, body)
		}
		return v
	}
	byARN, byName := get(arn), get("c1-etcd-a")
	if byARN.ARN != arn || byARN.Name != "c1-etcd-a" || byARN.SecretString != `{"ca.crt":"PEM"}` || len(byARN.VersionStages) != 1 ||
		byARN.VersionStages[0] != "AWSCURRENT" || byARN.VersionId == "" || time.Since(time.Unix(int64(byARN.CreatedDate), 0)) > time.Minute {
		t.Errorf("by ARN: %+v", byARN)
	}
	if byName.VersionId != byARN.VersionId || byName.SecretString != byARN.SecretString {
		t.Errorf("by name: %+v", byName)
	}

	code, body := secretsCall(t, c, "PutSecretValue", `{"SecretId": "c1-etcd-a", "SecretString": "v2", "ClientRequestToken": "tok-2"}`)
	if code != http.StatusOK || !strings.Contains(body, `"VersionId":"tok-2"`) {
		t.Errorf("PutSecretValue: %d %s", code, body)
	}
	if v := get(arn); v.SecretString != "v2" || v.VersionId != "tok-2" {
		t.Errorf("after a put: %+v", v)
	}
	if v, ok := c.Secret("c1-etcd-a"); !ok || v != "v2" {
		t.Errorf("Secret: %q %v", v, ok)
	}

	code, body = secretsCall(t, c, "GetSecretValue", `{"SecretId": "c1-etcd-b"}`)
	var e map[string]string
	if err := json.Unmarshal([]byte(body), &e); code != http.StatusBadRequest || err != nil || e["__type"] != "ResourceNotFoundException" || e["Message"] == "" {
		t.Errorf("an unknown secret: %d %s", code, body)
	}
}
