package awsdouble

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// S3 is gofakes3 over memory. It takes the bucket from the host name for
// virtual-hosted requests (kubeha-backups.s3.eu-west-1.amazonaws.com), as
// the AWS CLI sends them to AWS, and from the path otherwise, as with
// --endpoint-url. SSE-KMS headers are kept as the object's metadata;
// nothing is encrypted.

// s3Hosts are the S3 endpoints under which a host name's first label is a
// bucket.
func (c *Cloud) s3Hosts() []string {
	return []string{"s3." + c.Region + ".amazonaws.com", "s3.amazonaws.com"}
}

// AddBucket creates a bucket.
func (c *Cloud) AddBucket(name string) error { return c.s3store.CreateBucket(name) }

// PutObject stores data at key in bucket, with the metadata an upload
// gets: the AWS CLI refuses to download an object without Last-Modified.
func (c *Cloud) PutObject(bucket, key string, data []byte) error {
	meta := map[string]string{"Last-Modified": time.Now().UTC().Format(http.TimeFormat), "Content-Type": "binary/octet-stream"}
	_, err := c.s3store.PutObject(bucket, key, meta, bytes.NewReader(data), int64(len(data)), nil)
	return err
}

// Object is the content of key in bucket.
func (c *Cloud) Object(bucket, key string) ([]byte, error) {
	obj, err := c.s3store.GetObject(bucket, key, nil)
	if err != nil {
		return nil, err
	}
	defer obj.Contents.Close()
	return io.ReadAll(obj.Contents)
}

// DeleteObject removes key from bucket, as expiry or an operator would.
func (c *Cloud) DeleteObject(bucket, key string) error {
	_, err := c.s3store.DeleteObject(bucket, key)
	return err
}

// List is the keys in bucket that start with prefix, in order.
func (c *Cloud) List(bucket, prefix string) ([]string, error) {
	objects, err := c.s3store.ListBucket(bucket, &gofakes3.Prefix{Prefix: prefix, HasPrefix: true}, gofakes3.ListBucketPage{})
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, o := range objects.Contents {
		keys = append(keys, o.Key)
	}
	return keys, nil
}

// serveS3 hands the request to gofakes3, which matches bucket host names
// without their port.
func (c *Cloud) serveS3(w http.ResponseWriter, r *http.Request, _ string) {
	r.Host = hostName(r)
	c.s3.ServeHTTP(w, r)
}

// s3Action names an S3 call as the S3 API does, from its method, whether
// it names a key, and its query.
func (c *Cloud) s3Action(r *http.Request) string {
	path := strings.TrimPrefix(r.URL.Path, "/")
	virtual := false
	for _, base := range c.s3Hosts() {
		virtual = virtual || strings.HasSuffix(hostName(r), "."+base)
	}
	hasKey := strings.Contains(path, "/")
	if virtual {
		hasKey = path != ""
	}
	q := r.URL.Query()
	switch {
	case !virtual && path == "":
		return "ListBuckets"
	case q.Has("uploads"):
		return "CreateMultipartUpload"
	case q.Has("uploadId") && r.Method == http.MethodPut:
		return "UploadPart"
	case q.Has("uploadId") && r.Method == http.MethodPost:
		return "CompleteMultipartUpload"
	case q.Has("uploadId") && r.Method == http.MethodDelete:
		return "AbortMultipartUpload"
	case !hasKey && r.Method == http.MethodGet && q.Get("list-type") == "2":
		return "ListObjectsV2"
	}
	bucketActions := map[string]string{"GET": "ListObjects", "HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket", "POST": "DeleteObjects"}
	objectActions := map[string]string{"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject", "DELETE": "DeleteObject"}
	if !hasKey {
		return bucketActions[r.Method]
	}
	if r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" {
		return "CopyObject"
	}
	return objectActions[r.Method]
}

// writeS3Error writes an error as S3 does; a HEAD answer has no body.
func writeS3Error(w http.ResponseWriter, r *http.Request, e apiError) {
	if r.Method == http.MethodHead {
		w.WriteHeader(e.Status)
		return
	}
	writeXML(w, e.Status, struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string   `xml:"Code"`
		Message   string   `xml:"Message"`
		RequestID string   `xml:"RequestId"`
	}{Code: e.Code, Message: e.Message, RequestID: requestID()})
}
