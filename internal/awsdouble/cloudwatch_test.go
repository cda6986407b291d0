package awsdouble

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Data points are kept with their namespace, dimensions, value and unit,
// whether the body is plain or gzipped as newer AWS CLIs send it.
func TestCloudWatchPutMetricData(t *testing.T) {
	c := NewCloud("eu-west-1")
	form := url.Values{"Action": {"PutMetricData"}, "Version": {"2010-08-01"}, "Namespace": {"kubeha"},
		"MetricData.member.1.MetricName": {"EtcdSnapshotUploaded"}, "MetricData.member.1.Unit": {"Count"}, "MetricData.member.1.Value": {"1"},
		"MetricData.member.1.Dimensions.member.1.Name": {"Cluster"}, "MetricData.member.1.Dimensions.member.1.Value": {"c1"},
		"MetricData.member.2.MetricName": {"Other"}, "MetricData.member.2.Value": {"2.5"}, "MetricData.member.2.Timestamp": {"2026-12-03T08:00:00Z"}}
	code, body := query(t, c, CloudWatch, form)
	if code != http.StatusOK || !strings.Contains(body, `<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">`) {
		t.Fatalf("PutMetricData: %d %s", code, body)
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write([]byte(form.Encode()))
	_ = zw.Close()
	r := httptest.NewRequest("POST", "https://monitoring.eu-west-1.amazonaws.com/", &zipped)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	r.Header.Set("Content-Encoding", "gzip")
	if code, body := send(t, c, CloudWatch, r); code != http.StatusOK {
		t.Fatalf("gzipped PutMetricData: %d %s", code, body)
	}

	m := c.Metrics()
	if len(m) != 4 {
		t.Fatalf("metrics: %+v", m)
	}
	if m[0].Namespace != "kubeha" || m[0].Name != "EtcdSnapshotUploaded" || m[0].Value != 1 || m[0].Unit != "Count" ||
		len(m[0].Dimensions) != 1 || m[0].Dimensions["Cluster"] != "c1" || time.Since(m[0].Time) > time.Minute {
		t.Errorf("first data point: %+v", m[0])
	}
	if m[1].Name != "Other" || m[1].Value != 2.5 || !m[1].Time.Equal(time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)) || m[3].Name != "Other" {
		t.Errorf("second data point: %+v", m[1])
	}

	code, body = query(t, c, CloudWatch, url.Values{"Action": {"PutMetricData"}, "Version": {"2010-08-01"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "<Code>MissingParameter</Code>") || !strings.Contains(body, "<ErrorResponse") {
		t.Errorf("no namespace: %d %s", code, body)
	}
}
