//! Which operation is allowed in which power state: one table shared by the
//! real and the fake hypervisor, so the fake behaves like the real thing.
//!
//! Operations whose target state already holds succeed without doing
//! anything (a reconciler may repeat an operation that had finished before a
//! crash); operations that make no sense in a state fail with
//! [`Error::InvalidState`].

use uuid::Uuid;

use super::error::{Error, Result};
use super::PowerState::{self, *};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    PowerOn,
    PowerOffGraceful,
    PowerOffHard,
    RebootSoft,
    RebootHard,
    Pause,
    Unpause,
    Suspend,
    Resume,
    /// resize, resize revert, rebuild: the disks change, so no process.
    Offline,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::PowerOn => "start",
            Op::PowerOffGraceful | Op::PowerOffHard => "stop",
            Op::RebootSoft => "soft-reboot",
            Op::RebootHard => "reboot",
            Op::Pause => "pause",
            Op::Unpause => "unpause",
            Op::Suspend => "suspend",
            Op::Resume => "resume",
            Op::Offline => "change the disks of",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Act,
    AlreadyDone,
}

pub(crate) fn plan(id: Uuid, op: Op, state: PowerState) -> Result<Plan> {
    use Plan::*;
    let p = match (op, state) {
        (Op::PowerOn, Shutoff | Crashed) => Act,
        (Op::PowerOn, Running) => AlreadyDone,
        (Op::PowerOffGraceful, Running | Paused) => Act,
        (Op::PowerOffHard, Running | Paused | Suspended) => Act,
        (Op::PowerOffGraceful | Op::PowerOffHard, Shutoff | Crashed) => AlreadyDone,
        (Op::RebootSoft, Running) => Act,
        (Op::RebootHard, _) => Act,
        (Op::Pause, Running) => Act,
        (Op::Pause, Paused) => AlreadyDone,
        (Op::Unpause, Paused) => Act,
        (Op::Unpause, Running) => AlreadyDone,
        (Op::Suspend, Running | Paused) => Act,
        (Op::Suspend, Suspended) => AlreadyDone,
        (Op::Resume, Suspended) => Act,
        (Op::Resume, Running) => AlreadyDone,
        (Op::Offline, Shutoff | Crashed) => Act,
        _ => {
            return Err(Error::InvalidState {
                id,
                op: op.name(),
                state,
            })
        }
    };
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let id = Uuid::nil();
        assert_eq!(plan(id, Op::PowerOn, Shutoff).unwrap(), Plan::Act);
        assert_eq!(plan(id, Op::PowerOn, Running).unwrap(), Plan::AlreadyDone);
        assert!(plan(id, Op::PowerOn, Suspended).is_err());
        assert!(plan(id, Op::PowerOffGraceful, Suspended).is_err());
        assert_eq!(plan(id, Op::PowerOffHard, Suspended).unwrap(), Plan::Act);
        assert!(plan(id, Op::Pause, Shutoff).is_err());
        assert!(plan(id, Op::RebootSoft, Paused).is_err());
        assert_eq!(plan(id, Op::RebootHard, Crashed).unwrap(), Plan::Act);
        assert!(plan(id, Op::Offline, Running).is_err());
        let e = plan(id, Op::Resume, Shutoff).unwrap_err().to_string();
        assert!(e.contains("cannot resume"), "{e}");
    }
}
