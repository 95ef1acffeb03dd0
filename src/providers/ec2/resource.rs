//! What the ec2 provider writes into the run's ledger: instances (before RunInstances answers, by
//! their client token), the run's key pair and its security groups, each with its region, where it is
//! looked for and removed.

use std::fmt;

use crate::provider::{Created, Resource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ec2Resource {
    /// A RunInstances call made (or about to be made) with this client token; its id is not known yet.
    PendingInstance {
        client_token: String,
        cell: String,
        region: String,
    },
    Instance {
        id: String,
        cell: String,
        region: String,
    },
    /// The run's key pair (`cell` empty), imported once per region.
    KeyPair {
        name: String,
        cell: String,
        region: String,
    },
    /// A security group made for the whole run in one VPC: recorded by its name before it is created
    /// (`id` is `None` until EC2 answers), removed once no instance uses it.
    SecurityGroup {
        name: String,
        id: Option<String>,
        vpc: String,
        region: String,
    },
}

impl Ec2Resource {
    /// The EC2 region it lives in.
    pub fn region(&self) -> &str {
        match self {
            Ec2Resource::PendingInstance { region, .. }
            | Ec2Resource::Instance { region, .. }
            | Ec2Resource::KeyPair { region, .. }
            | Ec2Resource::SecurityGroup { region, .. } => region,
        }
    }

    /// As the ledger holds it.
    pub fn recorded(self) -> Resource {
        Resource::new(self)
    }
}

/// The ec2 resource a ledger entry is, if it is one.
pub fn of(resource: &Resource) -> Option<&Ec2Resource> {
    resource.get::<Ec2Resource>()
}

impl Created for Ec2Resource {
    fn key(&self) -> String {
        match self {
            Ec2Resource::PendingInstance { client_token, .. } => client_token.clone(),
            Ec2Resource::Instance { id, .. } => id.clone(),
            Ec2Resource::KeyPair { name, .. } => name.clone(),
            Ec2Resource::SecurityGroup { name, id, .. } => id.clone().unwrap_or_else(|| name.clone()),
        }
    }

    fn cell(&self) -> &str {
        match self {
            Ec2Resource::PendingInstance { cell, .. }
            | Ec2Resource::Instance { cell, .. }
            | Ec2Resource::KeyPair { cell, .. } => cell,
            // The run's, not one cell's.
            Ec2Resource::SecurityGroup { .. } => "",
        }
    }
}

impl fmt::Display for Ec2Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ec2Resource::PendingInstance { client_token, cell, .. } => {
                write!(f, "instance launched with client token {client_token} (cell {cell})")
            }
            Ec2Resource::Instance { id, cell, .. } => write!(f, "instance {id} (cell {cell})"),
            Ec2Resource::KeyPair { name, cell, .. } if cell.is_empty() => write!(f, "key pair {name} (the run's)"),
            Ec2Resource::KeyPair { name, cell, .. } => write!(f, "key pair {name} (cell {cell})"),
            Ec2Resource::SecurityGroup { name, id: Some(id), vpc, .. } => {
                write!(f, "security group {id} ({name} in {vpc}, the run's)")
            }
            Ec2Resource::SecurityGroup { name, id: None, vpc, .. } => {
                write!(f, "security group {name} (in {vpc}, the run's)")
            }
        }
    }
}
