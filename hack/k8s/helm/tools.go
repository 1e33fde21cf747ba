//go:build tools

// Package tools keeps helm.sh/helm/v3 required by this module.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
