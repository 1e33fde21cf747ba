//go:build tools

// Package tools keeps sigs.k8s.io/kwok required by this module.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
