//! Who acts at the CLI, and the gate every command that changes something
//! passes (issue 16).
//!
//! An operator at the CLI holds the database's credentials, so they act as
//! `cloud_pms_admin` ([`access::Principal::operator`]). Their name in the
//! audit log is the operating system's login of the process: the user
//! database's name for its effective user id (`cli:{login}`), never a flag
//! or an environment variable, so an audit row cannot be signed with a
//! name typed in. Where the system has no name for the id (a container's
//! arbitrary uid), it is `cli:uid-{id}`. Operators therefore run the CLI
//! under their own accounts; a shared account is recorded as itself.
//!
//! Each changing command passes [`gate`] with that principal (a refusal is
//! audited by the gate) and then calls its `control` use case (or the
//! gate's, for tokens), which audits the change as the same actor: the
//! path the admin API takes with a token's principal.

use access::{Action, Gate, Principal};
use anyhow::Result;
use store::Store;

/// The operator running this process.
pub(crate) fn operator() -> Principal {
    Principal::operator(&login())
}

/// Checks `action` for `who` with [`Gate::authorize`]; a refusal is in the
/// audit log and returned.
pub(crate) async fn gate(store: &Store, who: &Principal, action: Action) -> Result<()> {
    Gate::new(store.clone()).authorize(who, &action).await?;
    Ok(())
}

/// The login of the process's effective user id, from the system's user
/// database; `uid-{id}` when it has none.
fn login() -> String {
    match whoami::fallible::username() {
        Ok(name) if !name.trim().is_empty() => name,
        _ => effective_uid().map_or_else(|| "uid-unknown".to_owned(), |uid| format!("uid-{uid}")),
    }
}

/// The effective user id, from `/proc/self/status` (Linux).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_the_system_login_whatever_the_environment() {
        let who = operator();
        assert!(who.actor.starts_with("cli:"), "{}", who.actor);
        assert!(who.actor.len() > "cli:".len(), "{}", who.actor);
        assert_eq!(who.role, access::Role::CloudPmsAdmin);
        let expected = std::process::Command::new("id")
            .arg("-un")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if let Some(name) = expected {
            assert_eq!(who.actor, format!("cli:{name}"));
        }
    }
}
