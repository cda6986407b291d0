package components

import (
	"encoding/json"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// storeSecret keeps files (name -> PEM) as one JSON secret under the
// cluster's KMS key.
func storeSecret(ctx *pulumi.Context, name string, kmsKeyArn pulumi.StringInput, tags pulumi.StringMap,
	opts []pulumi.ResourceOption, files pulumi.StringMap) (*secretsmanager.Secret, error) {
	secret, err := secretsmanager.NewSecret(ctx, name, &secretsmanager.SecretArgs{
		NamePrefix:           pulumi.String(name + "-"),
		KmsKeyId:             kmsKeyArn,
		RecoveryWindowInDays: pulumi.Int(7),
		Tags:                 tags,
	}, opts...)
	if err != nil {
		return nil, err
	}
	content := resolve(files, func(doc map[string]string) (string, error) {
		out, err := json.Marshal(doc)
		return string(out), err
	})
	_, err = secretsmanager.NewSecretVersion(ctx, name, &secretsmanager.SecretVersionArgs{
		SecretId: secret.ID(), SecretString: pulumi.ToSecret(content).(pulumi.StringOutput),
	}, opts...)
	return secret, err
}
