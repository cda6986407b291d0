package components

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/cache"
)

// Asset is one pinned file nodes install; NodeAssetSet is all of them.
type (
	Asset        = bootstrap.Asset
	NodeAssetSet = bootstrap.Assets
)

// NodeAssetsArgs say which files nodes install.
type NodeAssetsArgs struct {
	ClusterName string
	// Assets replace kubeha's pins (bootstrap.PinnedAssets), e.g. with a
	// mirror's copies; zero means the pins.
	Assets NodeAssetSet
	// OlderVersions are older Kubernetes releases that worker pools are
	// held at (WorkerPool.KubernetesVersion): their pinned assets go into
	// the same bucket.
	OlderVersions []string
	// RunningVersion is the release every API server runs (the version
	// record), while the cluster upgrades from it to Assets': its pinned
	// assets go into the bucket too, and nodes of a newer release hold
	// their kubelets at it (bootstrap.ResolvedAssets.Held). Empty, or
	// Assets' own, means no upgrade is in flight.
	RunningVersion string
	// OlderAssets replace the pins of an older release (of OlderVersions
	// or RunningVersion), as Assets does the cluster's.
	OlderAssets []NodeAssetSet
	// Protect guards the bucket from `pulumi destroy`.
	Protect bool
	Tags    map[string]string
}

// NodeAssets is the cluster's asset bucket: every binary a node installs,
// copied at deploy time from its pinned source, so that nodes boot from
// the VPC's S3 endpoint alone and a release that moves or vanishes
// upstream cannot break a launch.
type NodeAssets struct {
	pulumi.ResourceState

	Assets NodeAssetSet
	// older are the sets of OlderVersions and RunningVersion, by version.
	older map[string]NodeAssetSet
	// running is RunningVersion while the cluster upgrades, else "".
	running   string
	Bucket    pulumi.StringOutput
	BucketArn pulumi.StringOutput
	// Recorded are the SHA-256s (hex) S3 recorded at copy, by key, for
	// the assets pinned without one.
	Recorded pulumi.StringMap
	bucketID pulumi.IDOutput
}

// NewNodeAssets declares the bucket and one object per asset.
func NewNodeAssets(ctx *pulumi.Context, name string, args *NodeAssetsArgs, opts ...pulumi.ResourceOption) (*NodeAssets, error) {
	a := &NodeAssets{Assets: args.Assets, Recorded: pulumi.StringMap{}, older: map[string]NodeAssetSet{}}
	if a.Assets == (NodeAssetSet{}) {
		a.Assets = bootstrap.PinnedAssets()
	}
	if err := a.Assets.Check(); err != nil {
		return nil, err
	}
	objects := a.Assets.List()
	versions := slices.Clone(args.OlderVersions)
	if running, ok := bootstrap.ParseVersion(args.RunningVersion); ok {
		if own, _ := bootstrap.ParseVersion(a.Assets.KubernetesVersion); running.Less(own) {
			a.running = args.RunningVersion
			versions = append(versions, a.running)
		}
	}
	for _, version := range versions {
		if _, ok := a.older[version]; ok {
			continue
		}
		set := bootstrap.Assets{}
		for _, given := range args.OlderAssets {
			if given.KubernetesVersion == version {
				set = given
			}
		}
		if set == (bootstrap.Assets{}) {
			release, err := bootstrap.ReleaseOf(version)
			if err != nil || release.Version != version {
				return nil, fmt.Errorf("NodeAssetsArgs.OlderVersions: %s is not a release kubeha pins", version)
			}
			set = bootstrap.PinnedAssetsOf(release)
		}
		a.older[version] = set
		objects = append(objects, set.List()...)
	}
	if err := ctx.RegisterComponentResource("kubeha:index:NodeAssets", name, a, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(a)}
	bucket, err := privateBucket(ctx, name, args.ClusterName+"-assets-", args.Protect, clusterTags(args.ClusterName, name, args.Tags), child)
	if err != nil {
		return nil, err
	}
	a.Bucket, a.BucketArn, a.bucketID = bucket.Bucket, bucket.Arn, bucket.ID()
	seen := map[string]bool{}
	for _, asset := range objects {
		// Releases share their etcd, containerd, runc and CNI plugins.
		if seen[asset.Key] {
			continue
		}
		seen[asset.Key] = true
		recorded, _, err := a.put(ctx, name, asset, args.ClusterName, args.Tags, child)
		if err != nil {
			return nil, err
		}
		if recorded != nil {
			a.Recorded[asset.Key] = recorded
		}
	}
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{"bucket": a.Bucket})
}

// put copies asset into the bucket, as an object named after name and
// its key, and returns it. For an asset pinned without a digest, it also
// returns the SHA-256 (hex) S3 records, which nodes check instead.
func (a *NodeAssets) put(ctx *pulumi.Context, name string, asset Asset, cluster string, tags map[string]string,
	opts []pulumi.ResourceOption) (pulumi.StringInput, pulumi.Resource, error) {
	source, err := assetSource(ctx, asset)
	if err != nil {
		return nil, nil, err
	}
	obj, err := s3.NewBucketObjectv2(ctx, name+"-"+strings.ReplaceAll(asset.Key, "/", "-"), &s3.BucketObjectv2Args{
		Bucket: a.bucketID, Key: pulumi.String(asset.Key), Source: source,
		// S3 records the copy's digest: nodes check it where upstream
		// publishes none kubeha can read, and anyone can audit it.
		ChecksumAlgorithm: pulumi.String("SHA256"),
		Tags:              clusterTags(cluster, name, tags),
	}, opts...)
	if err != nil || asset.SHA256 != "" {
		return nil, obj, err
	}
	return obj.ChecksumSha256.ApplyT(func(b64 string) (string, error) {
		if b64 == "" {
			// Only a caller's mocks leave it empty (S3 always records
			// it): zeros, which no file matches, so a node would
			// refuse the file rather than trust it.
			return strings.Repeat("0", sha256.Size*2), nil
		}
		sum, err := base64.StdEncoding.DecodeString(b64)
		return hex.EncodeToString(sum), err
	}).(pulumi.StringOutput), obj, nil
}

// assetSource is what the deploy uploads for asset: the upstream URL, a
// local file, or the copy `kubeha assets fetch` made of an image. A copy
// not made yet is a warning here (an offline plan needs none) and an
// error in `pulumi up`, when the file is read.
func assetSource(ctx *pulumi.Context, asset Asset) (pulumi.Asset, error) {
	if ref, ok := asset.ImageRef(); ok {
		path, err := cache.ImageArchive(ref)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(path); err != nil {
			_ = ctx.Log.Warn(fmt.Sprintf("%s is not fetched yet (%s): run `kubeha assets fetch` before `pulumi up`, which uploads it for the nodes", ref, path), nil)
		}
		return pulumi.NewFileAsset(path), nil
	}
	if strings.Contains(asset.Source, "://") {
		return pulumi.NewRemoteAsset(asset.Source), nil
	}
	return pulumi.NewFileAsset(asset.Source), nil
}

// wire adds what a node's user-data needs from the bucket to wired, for
// resolve; resolved reads it back.
func (a *NodeAssets) wire(wired pulumi.StringMap) pulumi.StringMap {
	wired["assets:bucket"] = a.Bucket
	for key, sum := range a.Recorded {
		wired["assets:sha256:"+key] = sum
	}
	return wired
}

func (a *NodeAssets) resolved(v map[string]string) bootstrap.ResolvedAssets {
	return a.resolvedOf(a.Assets, v)
}

// of is the set of Kubernetes version: Assets, or an older version's.
func (a *NodeAssets) of(version string) (NodeAssetSet, error) {
	if set, ok := a.older[version]; ok {
		return set, nil
	}
	if version == "" || version == a.Assets.KubernetesVersion {
		return a.Assets, nil
	}
	return NodeAssetSet{}, fmt.Errorf("the asset bucket holds no Kubernetes %s: list it in NodeAssetsArgs.OlderVersions", version)
}

func (a *NodeAssets) resolvedOf(set NodeAssetSet, v map[string]string) bootstrap.ResolvedAssets {
	r := bootstrap.ResolvedAssets{Assets: set, Held: a.heldFor(set), Bucket: v["assets:bucket"], Recorded: map[string]string{}}
	for key := range a.Recorded {
		r.Recorded[key] = v["assets:sha256:"+key]
	}
	return r
}

// heldFor is the release a node of set's holds its kubelet at while the
// cluster upgrades: the one every API server still runs; zero if none.
func (a *NodeAssets) heldFor(set NodeAssetSet) NodeAssetSet {
	own, _ := bootstrap.ParseVersion(set.KubernetesVersion)
	if running, ok := bootstrap.ParseVersion(a.running); ok && running.Less(own) {
		return a.older[a.running]
	}
	return NodeAssetSet{}
}

// heldInstalls are what a node of set's installs from the held release:
// its kubelet and the images its list names.
func (a *NodeAssets) heldInstalls(set NodeAssetSet, images func(NodeAssetSet) []Asset) []Asset {
	held := a.heldFor(set)
	if held == (NodeAssetSet{}) {
		return nil
	}
	return append([]Asset{held.Kubelet}, images(held)...)
}

// readPolicy lets a node read the given assets and nothing else.
func (a *NodeAssets) readPolicy(bucketArn string, assets ...Asset) policyStatement {
	var keys []string
	for _, asset := range assets {
		keys = append(keys, bucketArn+"/"+asset.Key)
	}
	return policyStatement{Sid: "InstallAssets", Effect: "Allow", Action: []string{"s3:GetObject"}, Resource: keys}
}

// privateBucket is a bucket no ACL or policy can make public, owned by its
// account, that refuses plain HTTP.
func privateBucket(ctx *pulumi.Context, name, prefix string, protect bool, tags pulumi.StringMap, opts []pulumi.ResourceOption) (*s3.BucketV2, error) {
	return newBucket(ctx, name, prefix, protect, nil, tags, opts)
}

// newBucket is privateBucket, except that anyone may read the objects at
// publicKeys, over HTTPS (no ACL can open any other).
func newBucket(ctx *pulumi.Context, name, prefix string, protect bool, publicKeys []string, tags pulumi.StringMap, opts []pulumi.ResourceOption) (*s3.BucketV2, error) {
	bucket, err := s3.NewBucketV2(ctx, name, &s3.BucketV2Args{
		BucketPrefix: pulumi.String(prefix),
		ForceDestroy: pulumi.Bool(!protect),
		Tags:         tags,
	}, append(slices.Clone(opts), pulumi.Protect(protect))...)
	if err != nil {
		return nil, err
	}
	public := len(publicKeys) > 0
	block, err := s3.NewBucketPublicAccessBlock(ctx, name, &s3.BucketPublicAccessBlockArgs{
		Bucket: bucket.ID(), BlockPublicAcls: pulumi.Bool(true), BlockPublicPolicy: pulumi.Bool(!public),
		IgnorePublicAcls: pulumi.Bool(true), RestrictPublicBuckets: pulumi.Bool(!public),
	}, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketOwnershipControls(ctx, name, &s3.BucketOwnershipControlsArgs{
		Bucket: bucket.ID(), Rule: &s3.BucketOwnershipControlsRuleArgs{ObjectOwnership: pulumi.String("BucketOwnerEnforced")},
	}, opts...); err != nil {
		return nil, err
	}
	// S3 refuses a public policy until the block allows one.
	_, err = s3.NewBucketPolicy(ctx, name, &s3.BucketPolicyArgs{
		Bucket: bucket.ID(),
		Policy: bucket.Arn.ApplyT(func(arn string) string {
			statements := []policyStatement{{
				Sid: "DenyInsecureTransport", Effect: "Deny", Principal: "*", Action: []string{"s3:*"},
				Resource:  []string{arn, arn + "/*"},
				Condition: map[string]map[string]any{"Bool": {"aws:SecureTransport": "false"}},
			}}
			if public {
				var objects []string
				for _, key := range publicKeys {
					objects = append(objects, arn+"/"+key)
				}
				statements = append(statements, policyStatement{Sid: "PublicDocuments", Effect: "Allow", Principal: "*",
					Action: []string{"s3:GetObject"}, Resource: objects})
			}
			return policyJSON(statements...)
		}).(pulumi.StringOutput),
	}, append(slices.Clone(opts), pulumi.DependsOn([]pulumi.Resource{block}))...)
	return bucket, err
}
