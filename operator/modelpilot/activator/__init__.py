"""Scale to zero: the activator holds a model's requests while no replica is Ready.

How a request finds it, without relying on the Host header (see README, Scale to zero):
each model with minReplicas 0 gets a port of its own on the activator (the operator picks
it, `status.activator.port`). While the model has no Ready replica, the operator adds an
EndpointSlice to the model's Service that points at the activator pods on that port; the
Service's own slices (its selector's pods) are left alone. kube-proxy sends the Service's
traffic to every slice it has, so callers by DNS name, by ClusterIP and through an ingress
all reach the activator, and the port says which model they meant. Once a replica is
Ready the operator removes the slice: a warm model's traffic goes to its pods directly.
"""
