package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
)

// mocks records every resource and answers with its inputs, plus the few
// outputs AWS and pulumi-tls would compute that the cluster reads back.
type mocks struct {
	mu        sync.Mutex
	resources map[string][]resource.PropertyMap // by type token
	caPEM     string
	// publicKeyPEM is every private key's public half: the cluster
	// publishes the service-account key's.
	publicKeyPEM string
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.resources[args.TypeToken] = append(m.resources[args.TypeToken], args.Inputs)
	m.mu.Unlock()
	state := args.Inputs.Copy()
	switch args.TypeToken {
	case "tls:index/selfSignedCert:SelfSignedCert":
		// Workers pin the CA by its public-key hash, so it must parse.
		state["certPem"] = resource.NewStringProperty(m.caPEM)
	case "tls:index/privateKey:PrivateKey":
		state["publicKeyPem"] = resource.NewStringProperty(m.publicKeyPEM)
	case "aws:lb/loadBalancer:LoadBalancer":
		state["dnsName"] = resource.NewStringProperty(args.Name + ".elb.eu-central-1.amazonaws.com")
	case "aws:ec2/launchTemplate:LaunchTemplate":
		state["latestVersion"] = resource.NewNumberProperty(1)
	}
	return args.Name + "-id", state, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return args.Args, nil
}

func selfSignedCA(t *testing.T) (certPEM, publicKeyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	public, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: public}))
}

func TestConsumerBuildsItsCluster(t *testing.T) {
	ca, public := selfSignedCA(t)
	m := &mocks{resources: map[string][]resource.PropertyMap{}, caPEM: ca, publicKeyPEM: public}
	var pools map[string]int
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		cluster, err := declare(ctx, clusterArgs())
		if err != nil {
			return err
		}
		pools = map[string]int{}
		for pool, groups := range cluster.WorkerGroups {
			pools[pool] = len(groups)
		}
		return nil
	}, pulumi.WithMocks("consumer", "test", m))
	if err != nil {
		t.Fatalf("declaring the cluster under mocks: %v", err)
	}

	if pools["general"] != 3 || pools["spot"] != 3 || len(pools) != 2 {
		t.Errorf("worker groups per pool %v, want general and spot in each of 3 zones", pools)
	}
	if n := len(m.resources["aws:ebs/volume:Volume"]); n != 5 {
		t.Errorf("%d etcd data volumes, want 5", n)
	}
	zonesOfVolumes := map[string]int{}
	for _, v := range m.resources["aws:ebs/volume:Volume"] {
		zonesOfVolumes[v["availabilityZone"].StringValue()]++
	}
	if len(zonesOfVolumes) != 3 {
		t.Errorf("etcd volumes by zone %v, want all 3 zones used", zonesOfVolumes)
	}

	spot, general := 0, 0
	for _, g := range m.resources["aws:autoscaling/group:Group"] {
		tags := map[string]string{}
		for _, tag := range g["tags"].ArrayValue() {
			tags[tag.ObjectValue()["key"].StringValue()] = tag.ObjectValue()["value"].StringValue()
		}
		switch tags["kubeha.io/pool"] {
		case "spot":
			spot++
			if tags["k8s.io/cluster-autoscaler/node-template/taint/shop.example.com/spot"] != "true:NoSchedule" {
				t.Errorf("spot group %s lacks its taint's autoscaler tag", tags["Name"])
			}
			dist := g["mixedInstancesPolicy"].ObjectValue()["instancesDistribution"].ObjectValue()
			if dist["onDemandPercentageAboveBaseCapacity"].NumberValue() != 0 {
				t.Errorf("spot group %s is not all spot", tags["Name"])
			}
		case "general":
			general++
			if !g["launchTemplate"].IsObject() || g["minSize"].NumberValue() != 1 {
				t.Errorf("general group %s: want one on-demand launch template and min 1", tags["Name"])
			}
		}
		// Only worker groups are cluster-autoscaler's to resize.
		if discoverable, worker := tags["k8s.io/cluster-autoscaler/shop"] == "owned", tags["kubeha.io/pool"] != ""; discoverable != worker {
			t.Errorf("group %s: discoverable by cluster-autoscaler %v, worker %v", tags["Name"], discoverable, worker)
		}
	}
	if spot != 3 || general != 3 {
		t.Errorf("%d spot and %d general groups, want 3 each", spot, general)
	}
	for _, lt := range m.resources["aws:ec2/launchTemplate:LaunchTemplate"] {
		if lt["metadataOptions"].ObjectValue()["httpTokens"].StringValue() != "required" {
			t.Errorf("a launch template allows IMDSv1")
		}
	}
	for _, typ := range []string{"aws:ec2/vpc:Vpc", "aws:kms/key:Key"} {
		for _, r := range m.resources[typ] {
			if !strings.Contains(r["tags"].ObjectValue()["team"].StringValue(), "payments") {
				t.Errorf("%s lacks the consumer's tags", typ)
			}
		}
	}
}

// A refused option reaches the importer as a components.FieldError it
// can inspect with errors.As, and nothing is declared.
func TestConsumerSeesTheRefusedField(t *testing.T) {
	ca, public := selfSignedCA(t)
	m := &mocks{resources: map[string][]resource.PropertyMap{}, caPEM: ca, publicKeyPEM: public}
	args := clusterArgs()
	args.LoadBalancer.Public, args.LoadBalancer.AllowedCidrs = true, []string{"0.0.0.0/0"}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := components.NewCluster(ctx, "shop", args)
		return err
	}, pulumi.WithMocks("consumer", "test", m))
	var bad *components.FieldError
	if !errors.As(err, &bad) || bad.Field != "LoadBalancer.AllowedCidrs[0]" || bad.Key != "kubeha:api.allowedCidrs[0]" || bad.Value != `"0.0.0.0/0"` {
		t.Fatalf("error %v, want a FieldError on LoadBalancer.AllowedCidrs[0]: prod never opens the API to the internet", err)
	}
	if len(m.resources) != 0 {
		t.Errorf("%d resource types declared despite the refusal", len(m.resources))
	}
	err = pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := declare(ctx, args)
		return err
	}, pulumi.WithMocks("consumer", "test", m))
	if err == nil || !strings.Contains(err.Error(), "LoadBalancer.AllowedCidrs[0] cannot be \"0.0.0.0/0\"") {
		t.Errorf("declare's message %v does not name the field and value", err)
	}
}
