#!/usr/bin/env bash
# Builds the kube-proxy of the pinned k8s.io/kubernetes release (../node-component.sh); prints its path.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../node-component.sh" kube-proxy
