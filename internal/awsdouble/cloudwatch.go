package awsdouble

import (
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"time"
)

const cloudWatchNamespace = "http://monitoring.amazonaws.com/doc/2010-08-01/"

// Metric is one data point put to CloudWatch.
type Metric struct {
	Namespace, Name string
	Dimensions      map[string]string
	Value           float64
	Unit            string
	// Time is the data point's timestamp, or when it was put.
	Time time.Time
	// Instance is the instance whose role credentials put it, if any.
	Instance string
}

// Metrics is every data point put so far, oldest first.
func (c *Cloud) Metrics() []Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	metrics := make([]Metric, len(c.metrics))
	for i, m := range c.metrics {
		m.Dimensions = maps.Clone(m.Dimensions)
		metrics[i] = m
	}
	return metrics
}

func (c *Cloud) serveCloudWatch(w http.ResponseWriter, r *http.Request, action string) {
	if action != "PutMetricData" {
		writeCloudWatchError(w, r, apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version 2010-08-01", action)})
		return
	}
	namespace := r.Form.Get("Namespace")
	if namespace == "" {
		writeCloudWatchError(w, r, apiError{http.StatusBadRequest, "MissingParameter", "The parameter Namespace is required."})
		return
	}
	var metrics []Metric
	for i := 1; ; i++ {
		member := "MetricData.member." + strconv.Itoa(i) + "."
		if !r.Form.Has(member + "MetricName") {
			break
		}
		value, err := strconv.ParseFloat(r.Form.Get(member+"Value"), 64)
		if err != nil {
			writeCloudWatchError(w, r, apiError{http.StatusBadRequest, "InvalidParameterValue", "The value for " + member + "Value is not a number."})
			return
		}
		m := Metric{Namespace: namespace, Name: r.Form.Get(member + "MetricName"), Dimensions: map[string]string{}, Instance: callerInstance(r),
			Value: value, Unit: r.Form.Get(member + "Unit"), Time: time.Now()}
		if t, err := time.Parse(time.RFC3339, r.Form.Get(member+"Timestamp")); err == nil {
			m.Time = t
		}
		for j := 1; ; j++ {
			dimension := member + "Dimensions.member." + strconv.Itoa(j) + "."
			if !r.Form.Has(dimension + "Name") {
				break
			}
			m.Dimensions[r.Form.Get(dimension+"Name")] = r.Form.Get(dimension + "Value")
		}
		metrics = append(metrics, m)
	}
	c.mu.Lock()
	c.metrics = append(c.metrics, metrics...)
	c.mu.Unlock()
	writeXML(w, http.StatusOK, struct {
		XMLName   xml.Name `xml:"http://monitoring.amazonaws.com/doc/2010-08-01/ PutMetricDataResponse"`
		RequestID string   `xml:"ResponseMetadata>RequestId"`
	}{RequestID: requestID()})
}

// writeCloudWatchError writes an error as CloudWatch does.
func writeCloudWatchError(w http.ResponseWriter, _ *http.Request, e apiError) {
	writeQueryError(w, cloudWatchNamespace, e)
}
