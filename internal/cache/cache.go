// Package cache names where kubeha keeps what it makes or fetches once
// per machine, outside any clone, so that a fresh clone (as CI makes)
// reuses it: $KUBEHA_CACHE, else ~/.cache/kubeha.
package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Dir is the cache folder.
func Dir() (string, error) {
	if dir := os.Getenv("KUBEHA_CACHE"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache: no home folder and KUBEHA_CACHE is unset: %w", err)
	}
	return filepath.Join(home, ".cache", "kubeha"), nil
}

// ImageArchive is where `kubeha assets fetch` keeps the image ref as a
// docker-save archive, for the deploy to upload.
func ImageArchive(ref string) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "images", strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(ref)+".tar"), nil
}
