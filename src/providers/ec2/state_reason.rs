//! Why EC2 moved an instance to `shutting-down`, `stopping`, `stopped` or `terminated`: the
//! `StateReason` code of DescribeInstances, read as who is to blame and in plain words.
//!
//! Only the guest shutting itself down (`Client.InstanceInitiatedShutdown`) is the image's doing: an
//! instance the platform ends (an encrypted snapshot it can't read, no capacity, a volume limit, a
//! Spot reclaim) says nothing about the image, and a code EC2 adds later is taken for the platform's
//! too, shown as it is. The codes and their meanings are EC2's own ("State change reasons" in the
//! DescribeInstances reference).

use std::fmt;

/// A `StateReason` as DescribeInstances answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateReason {
    pub code: Code,
    /// EC2's own message ("Client.InternalError: Client error on launch"), when it gave one.
    pub message: Option<String>,
}

/// Who a state change is to blame on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The guest did it: the cell fails.
    Image,
    /// EC2, the account or someone else did it: the cell is an error.
    Platform,
}

/// EC2's documented `StateReason` codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    ServerInternalError,
    ServerInsufficientInstanceCapacity,
    ServerScheduledStop,
    ServerSpotInstanceShutdown,
    ServerSpotInstanceTermination,
    ClientInternalError,
    ClientInstanceInitiatedShutdown,
    ClientInstanceTerminated,
    ClientInvalidSnapshotNotFound,
    ClientVolumeLimitExceeded,
    ClientUserInitiatedShutdown,
    ClientUserInitiatedHibernate,
    /// A code this table does not know, as EC2 gave it.
    Other(String),
}

/// Every code EC2 documents.
const KNOWN: [Code; 12] = [
    Code::ServerInternalError,
    Code::ServerInsufficientInstanceCapacity,
    Code::ServerScheduledStop,
    Code::ServerSpotInstanceShutdown,
    Code::ServerSpotInstanceTermination,
    Code::ClientInternalError,
    Code::ClientInstanceInitiatedShutdown,
    Code::ClientInstanceTerminated,
    Code::ClientInvalidSnapshotNotFound,
    Code::ClientVolumeLimitExceeded,
    Code::ClientUserInitiatedShutdown,
    Code::ClientUserInitiatedHibernate,
];

impl Code {
    /// The code EC2 gave; `None` for an empty one (a state change without a reason).
    pub fn parse(code: &str) -> Option<Code> {
        let code = code.trim();
        if code.is_empty() {
            return None;
        }
        let known = KNOWN.iter().find(|known| known.as_str() == code).cloned();
        Some(known.unwrap_or_else(|| Code::Other(code.to_string())))
    }

    /// The code as EC2 spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Code::ServerInternalError => "Server.InternalError",
            Code::ServerInsufficientInstanceCapacity => "Server.InsufficientInstanceCapacity",
            Code::ServerScheduledStop => "Server.ScheduledStop",
            Code::ServerSpotInstanceShutdown => "Server.SpotInstanceShutdown",
            Code::ServerSpotInstanceTermination => "Server.SpotInstanceTermination",
            Code::ClientInternalError => "Client.InternalError",
            Code::ClientInstanceInitiatedShutdown => "Client.InstanceInitiatedShutdown",
            Code::ClientInstanceTerminated => "Client.InstanceTerminated",
            Code::ClientInvalidSnapshotNotFound => "Client.InvalidSnapshot.NotFound",
            Code::ClientVolumeLimitExceeded => "Client.VolumeLimitExceeded",
            Code::ClientUserInitiatedShutdown => "Client.UserInitiatedShutdown",
            Code::ClientUserInitiatedHibernate => "Client.UserInitiatedHibernate",
            Code::Other(code) => code,
        }
    }

    /// What it means, in plain words; `None` for a code this table does not know.
    pub fn meaning(&self) -> Option<&'static str> {
        Some(match self {
            Code::ServerInternalError => "an internal error in EC2 ended the instance",
            Code::ServerInsufficientInstanceCapacity => "EC2 had not enough capacity for the instance",
            Code::ServerScheduledStop => "EC2 stopped the instance for a scheduled retirement",
            Code::ServerSpotInstanceShutdown => "EC2 stopped the Spot Instance",
            Code::ServerSpotInstanceTermination => "EC2 reclaimed the Spot Instance",
            // EC2's documented meaning of this code at launch.
            Code::ClientInternalError => {
                "the account can't use the image's KMS key, most likely: EC2 ends a launch so when the \
                 image's snapshots are encrypted with a key not shared with this account; share the key, \
                 or copy the image re-encrypted with a key of this account"
            }
            Code::ClientInstanceInitiatedShutdown => {
                "the guest shut itself down, by a shutdown or poweroff from inside the instance"
            }
            Code::ClientInstanceTerminated => "the instance was terminated or rebooted during image creation",
            Code::ClientInvalidSnapshotNotFound => "the image's snapshot was not found",
            Code::ClientVolumeLimitExceeded => "the account's EBS volume limit was exceeded",
            Code::ClientUserInitiatedShutdown => "stopped or terminated through the EC2 API, not by amiprobe",
            Code::ClientUserInitiatedHibernate => "hibernated through the EC2 API, not by amiprobe",
            Code::Other(_) => return None,
        })
    }

    pub fn blame(&self) -> Blame {
        match self {
            Code::ClientInstanceInitiatedShutdown => Blame::Image,
            _ => Blame::Platform,
        }
    }
}

impl StateReason {
    /// A reason from DescribeInstances' code and message; `None` without a code.
    pub fn new(code: Option<&str>, message: Option<&str>) -> Option<StateReason> {
        let code = Code::parse(code?)?;
        let message = message.map(str::trim).filter(|m| !m.is_empty()).map(str::to_string);
        Some(StateReason { code, message })
    }

    pub fn blame(&self) -> Blame {
        self.code.blame()
    }
}

/// "Client.InternalError: the account can't use the image's KMS key...", or for a code this table
/// does not know, the code and EC2's own message.
impl fmt::Display for StateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code.as_str();
        match (self.code.meaning(), &self.message) {
            (Some(words), _) => write!(f, "{code}: {words}"),
            // EC2's messages repeat the code first ("Server.Foo: ..."): shown once.
            (None, Some(message)) if message.starts_with(code) => write!(f, "{message}"),
            (None, Some(message)) => write!(f, "{code}: {message}"),
            (None, None) => write!(f, "{code}: a state change EC2 gave no known meaning for"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_reads_back_as_spelled_and_only_the_guest_shutting_down_blames_the_image() {
        for known in &KNOWN {
            let spelled = known.as_str();
            assert_eq!(Code::parse(spelled).as_ref(), Some(known));
            assert!(known.meaning().is_some(), "{spelled}");
            let image = spelled == "Client.InstanceInitiatedShutdown";
            assert_eq!(known.blame() == Blame::Image, image, "{spelled}");
        }
        assert_eq!(Code::parse("Client.VolumeLimitExceeded"), Some(Code::ClientVolumeLimitExceeded));
    }

    #[test]
    fn the_kms_cause_is_named_for_a_client_internal_error() {
        let reason =
            StateReason::new(Some("Client.InternalError"), Some("Client.InternalError: Client error on launch"));
        let text = reason.unwrap().to_string();
        assert!(text.starts_with("Client.InternalError: the account can't use the image's KMS key"), "{text}");
    }

    #[test]
    fn an_unknown_code_is_the_platforms_and_shown_with_its_message() {
        let reason = StateReason::new(Some("Server.NewThing"), Some("Server.NewThing: something new")).unwrap();
        assert_eq!(reason.blame(), Blame::Platform);
        assert_eq!(reason.to_string(), "Server.NewThing: something new");
        let bare = StateReason::new(Some("Client.Odd"), None).unwrap();
        assert!(bare.to_string().starts_with("Client.Odd: "), "{bare}");
    }

    #[test]
    fn no_code_is_no_reason() {
        assert_eq!(StateReason::new(None, Some("x")), None);
        assert_eq!(StateReason::new(Some(" "), None), None);
    }
}
