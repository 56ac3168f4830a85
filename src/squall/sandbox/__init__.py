"""The sandbox: the node (zygotes, forked instances, isolation, cgroups), the runtime that runs inside every instance
(``runtime/``, which imports only ``protocol``) and the node <-> instance protocol."""
