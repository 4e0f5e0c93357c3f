"""A real local control plane for development, tests and the demo.

etcd, kube-apiserver (secure port, token auth, RBAC) and Prometheus run as plain processes
on loopback. There is no kubelet, scheduler or controller-manager: `kubelet.FakeKubelet`
plays the kubelet by writing pod status.
"""
