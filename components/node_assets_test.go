package components

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/cache"
	"github.com/kubeha/kubeha/internal/mockrun"
)

// Nodes install etcd from the cluster's asset bucket, which the deploy
// fills from the pinned release, and each member's role may read that one
// object and no other.
func TestEtcdInstallsFromTheAssetBucket(t *testing.T) {
	rec := runEtcd(t, 3)
	pinned := bootstrap.PinnedAssets().Etcd
	objects := rec.OfType("aws:s3/bucketObjectv2:BucketObjectv2")
	if len(objects) != len(bootstrap.PinnedAssets().List()) {
		t.Fatalf("%d bucket objects, want one per pinned asset (%d)", len(objects), len(bootstrap.PinnedAssets().List()))
	}
	byKey := map[string]mockrun.Resource{}
	for _, o := range objects {
		byKey[o.String("key")] = o
	}
	for _, a := range bootstrap.PinnedAssets().List() {
		o, ok := byKey[a.Key]
		if !ok {
			t.Errorf("asset %s is not copied", a.Key)
			continue
		}
		if ref, isImage := a.ImageRef(); isImage {
			// An image is uploaded from the copy `kubeha assets fetch` made.
			want, _ := cache.ImageArchive(ref)
			if got := o.Get("source").AssetValue().Path; got != want {
				t.Errorf("image %s is uploaded from %q, want the fetched copy %s", ref, got, want)
			}
		} else if o.Get("source").AssetValue().URI != a.Source {
			t.Errorf("asset %s is not copied from %s", a.Key, a.Source)
		}
	}
	obj := byKey[pinned.Key]
	if obj.String("bucket") != "c1-assets-0123456789" || obj.String("key") != pinned.Key || obj.String("checksumAlgorithm") != "SHA256" {
		t.Errorf("asset object = bucket %q key %q checksum %q, want c1-assets-0123456789, %q, SHA256", obj.String("bucket"), obj.String("key"), obj.String("checksumAlgorithm"), pinned.Key)
	}
	if src := obj.Get("source"); !src.IsAsset() || src.AssetValue().URI != pinned.Source {
		t.Errorf("asset source = %v, want a remote asset of %s", src, pinned.Source)
	}
	if !strings.HasPrefix(pinned.Source, "https://github.com/etcd-io/etcd/releases/download/"+bootstrap.EtcdVersion+"/") {
		t.Errorf("etcd's source %s is not its release", pinned.Source)
	}

	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		raw, _ := base64.StdEncoding.DecodeString(lt.String("userData"))
		data, err := bootstrap.ReadUserData(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"ETCD_ARCHIVE_URL=s3://c1-assets-0123456789/" + pinned.Key, "ETCD_ARCHIVE_SHA256=" + pinned.SHA256} {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s user-data lacks %q", lt.Name, want)
			}
		}
		for _, host := range []string{"github.com", "pkgs.k8s.io", "download.docker.com"} {
			if strings.Contains(string(data), host) {
				t.Errorf("%s user-data names %s: etcd nodes must install from the asset bucket", lt.Name, host)
			}
		}
	}
	checked := 0
	for _, p := range rec.OfType("aws:iam/rolePolicy:RolePolicy") {
		if !strings.Contains(p.Name, "etcd") || strings.HasSuffix(p.Name, "-bootstrap") {
			continue
		}
		checked++
		var doc struct{ Statement []policyStatement }
		if err := json.Unmarshal([]byte(p.String("policy")), &doc); err != nil {
			t.Fatal(err)
		}
		var reads []any
		for _, s := range doc.Statement {
			if slices.Contains(s.Action, "s3:GetObject") && strings.Contains(fmt.Sprint(s.Resource), "assets") {
				reads = append(reads, s.Resource.([]any)...)
			}
		}
		if len(reads) != 1 || reads[0] != "arn:aws:mock:::aws:s3/bucketV2:BucketV2/c1-assets/"+pinned.Key {
			t.Errorf("%s reads %v from the asset bucket, want etcd's archive only", p.Name, reads)
		}
	}
	if checked != 3 {
		t.Errorf("checked %d etcd members' policies, want 3", checked)
	}
}

// A set of assets with a missing digest is refused before anything is
// declared.
func TestNodeAssetsRefuseAnUncheckedAsset(t *testing.T) {
	assets := bootstrap.PinnedAssets()
	assets.Etcd.SHA256 = "not-a-digest"
	args := minimalClusterArgs()
	args.Assets = assets
	rec, err := runCluster(args, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "Assets" || !strings.Contains(fe.Value, "not-a-digest") {
		t.Errorf("err = %v, want a FieldError on Assets naming the malformed digest", err)
	}
	if n := len(rec.Resources()); n != 0 {
		t.Errorf("%d resources declared for a refused cluster, want 0", n)
	}
}

// The default image is resolved when the program runs: a new Debian image
// is a change `pulumi preview` shows, not a surprise at the next launch.
func TestImageResolvedAtDeploy(t *testing.T) {
	rec := runEtcd(t, 3)
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if id := lt.String("imageId"); !strings.HasPrefix(id, "ami-0") {
			t.Errorf("%s launches image %q, want the AMI ID %s holds now", lt.Name, id, DefaultImage)
		}
	}
}
