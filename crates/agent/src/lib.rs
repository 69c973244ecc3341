//! The oxistack host agent: the hypervisor layer ([`hypervisor::Hypervisor`],
//! with a QEMU implementation and a fake) and the internal API that serves
//! it to a control plane on another machine ([`remote`]).
//! Network devices and block storage follow in the same shape.

pub mod hypervisor;
pub mod remote;
