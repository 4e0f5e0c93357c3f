"""`make demo`: the whole product on one machine (development only: it needs the repository's
local control plane and the sample model in examples/)."""
