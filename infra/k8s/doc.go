// Package k8s holds lambdarec's Kubernetes manifests (a Kustomize base and
// the dev and production overlays) and the tests that render them with
// kustomize's Go API and decode every object into the typed Kubernetes API
// with strict field checking. It is a module of its own so that the Kubernetes
// and kustomize dependency graph stays out of the product's go.mod.
package k8s
