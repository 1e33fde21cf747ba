//go:build tools

// Package tools keeps github.com/prometheus/prometheus required by this module.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
