package addons

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/internal/tools"
)

// apiServer is a real kube-apiserver (the pinned v1.36.3) on loopback,
// over a real etcd, that lets anyone do anything: only its schemas matter.
type apiServer struct {
	url    string
	client *http.Client
}

// schemaToken authenticates the test to its throwaway API server.
const schemaToken = "kubeha-schema-check"

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startProcess(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			out, _ := os.ReadFile(log.Name())
			if len(out) > 3000 {
				out = out[len(out)-3000:]
			}
			t.Logf("%s log tail:\n%s", filepath.Base(name), out)
		}
	})
}

func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	etcd, err := tools.Path("etcd")
	if err != nil {
		tools.Unavailable(t, err.Error())
	}
	apiserver, err := tools.Path("kube-apiserver")
	if err != nil {
		tools.Unavailable(t, err.Error())
	}
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	_ = os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	_ = os.WriteFile(saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)

	tokens := filepath.Join(dir, "tokens.csv")
	_ = os.WriteFile(tokens, []byte(schemaToken+",admin,admin,system:masters\n"), 0o600)

	client, peer, secure := freePort(t), freePort(t), freePort(t)
	startProcess(t, dir, etcd, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peer))
	startProcess(t, dir, apiserver,
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", client),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", secure),
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+saPub,
		"--service-account-signing-key-file="+saKey, "--service-cluster-ip-range=10.96.0.0/12",
		"--authorization-mode=AlwaysAllow", "--token-auth-file="+tokens,
		// The loopback address may not back the kubernetes Service.
		"--endpoint-reconciler-type=none")

	s := &apiServer{url: fmt.Sprintf("https://127.0.0.1:%d", secure),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, out := s.do(t, "GET", "/readyz?verbose", nil)
		if code == http.StatusOK {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready within 90s (last /readyz %d):\n%s", code, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *apiServer) do(t *testing.T, method, path string, body any) (int, string) {
	t.Helper()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.url+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+schemaToken)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// collection is the REST path objects of obj's kind are created under.
func collection(obj map[string]any) string {
	apiVersion, kind := obj["apiVersion"].(string), strings.ToLower(obj["kind"].(string))
	plural := kind + "s"
	if strings.HasSuffix(kind, "s") {
		plural = kind + "es"
	}
	prefix := "/apis/" + apiVersion
	if !strings.Contains(apiVersion, "/") {
		prefix = "/api/" + apiVersion
	}
	if ns, ok := obj["metadata"].(map[string]any)["namespace"].(string); ok {
		prefix += "/namespaces/" + ns
	}
	return prefix + "/" + plural
}

// installCRD creates a CRD from the pinned upstream file and waits until
// it is served.
func (s *apiServer) installCRD(t *testing.T, file string) {
	t.Helper()
	bin, err := tools.Dir()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(bin), "crds", file))
	if err != nil {
		tools.Unavailable(t, fmt.Sprintf("the CRD %s is not fetched: run hack/tools.sh (make tools): %v", file, err))
	}
	var crd map[string]any
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	if code, out := s.do(t, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd); code != http.StatusCreated {
		t.Fatalf("creating CRD %s: HTTP %d %s", file, code, out)
	}
	name := crd["metadata"].(map[string]any)["name"].(string)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, out := s.do(t, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+name, nil)
		if strings.Contains(out, `"type":"Established","status":"True"`) {
			return
		}
	}
	t.Fatalf("CRD %s not established within 30s", name)
}

// TestManifestsPassTheAPIServersSchemas sends every manifest kubeha applies
// itself to the pinned kube-apiserver as a server-side dry run with strict
// field validation: the cluster's own schemas, CRDs included, are the
// check. Broken variants must be refused.
func TestManifestsPassTheAPIServersSchemas(t *testing.T) {
	s := startAPIServer(t)
	s.installCRD(t, "snapshot.storage.k8s.io_volumesnapshotclasses.yaml")
	s.installCRD(t, "monitoring.coreos.com_prometheusrules.yaml")
	if code, out := s.do(t, "POST", "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": KubePrometheusStack.Namespace}}); code != http.StatusCreated {
		t.Fatalf("creating namespace: HTTP %d %s", code, out)
	}
	dryRun := func(obj map[string]any) (int, string) {
		return s.do(t, "POST", collection(obj)+"?dryRun=All&fieldValidation=Strict", obj)
	}
	manifests := Manifests(labCluster())
	for _, obj := range manifests {
		if code, out := dryRun(obj); code != http.StatusCreated {
			t.Errorf("%s refused: HTTP %d %s", ObjectName(obj), code, out)
		}
	}
	t.Logf("MEASURED: %d manifests accepted by kube-apiserver v1.36.3 (dry run, strict fields)", len(manifests))

	// Each broken variant must be refused for its own field: a 422 naming
	// it (a 400 for an unknown field, which strict decoding reports), not
	// any failure at all.
	type refusal struct {
		obj   map[string]any
		code  int
		field string
	}
	broken := map[string]refusal{}
	sc := StorageClass()
	sc["volumeBindingMode"] = "Sometimes"
	broken["StorageClass with an unknown binding mode"] = refusal{sc, http.StatusUnprocessableEntity, "volumeBindingMode"}
	vsc := VolumeSnapshotClass()
	vsc["deletionPolicy"] = "Keep"
	broken["VolumeSnapshotClass with an unknown deletion policy"] = refusal{vsc, http.StatusUnprocessableEntity, "deletionPolicy"}
	pdb := CoreDNSDisruptionBudget()
	pdb["spec"].(map[string]any)["minAvailable"] = 2
	broken["PodDisruptionBudget with both minAvailable and maxUnavailable"] = refusal{pdb, http.StatusUnprocessableEntity, "minAvailable"}
	rules := EtcdAlertRules(labCluster())
	rules["spec"].(map[string]any)["groups"].([]any)[0].(map[string]any)["rules"].([]any)[0].(map[string]any)["expresion"] = "up"
	broken["PrometheusRule with a misspelt field"] = refusal{rules, http.StatusBadRequest, "expresion"}
	for what, r := range broken {
		code, out := dryRun(r.obj)
		if code != r.code || !strings.Contains(out, r.field) {
			t.Errorf("%s: HTTP %d %s; want %d naming %s", what, code, out, r.code, r.field)
		}
	}
}
