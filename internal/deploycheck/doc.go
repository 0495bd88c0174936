// Package deploycheck holds only tests: they keep every file under deploy/
// honest. Kubernetes manifests are decoded strictly into the typed
// k8s.io/api objects and cross-checked against the Pinhole configs they
// embed; Prometheus rules go through promtool; systemd units through
// systemd-analyze; the container image is built with buildah and run.
//
// Tools that are missing make their test skip, except under CI (CI set),
// where a missing tool is a failure.
package deploycheck
