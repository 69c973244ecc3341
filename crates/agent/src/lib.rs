//! The oxistack host agent. Today: the hypervisor layer
//! ([`hypervisor::Hypervisor`], with a QEMU implementation and a fake).
//! Network devices and block storage follow in the same shape.

pub mod hypervisor;
