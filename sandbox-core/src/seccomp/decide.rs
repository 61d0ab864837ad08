//! Which seccomp filter a run installs on this host, with its report
//! lines.

use sandbox_policy::{Policy, SeccompMode};

use crate::findings::{Findings, name_of, reason};
use crate::host::HostCapabilities;
use crate::report::Layer;

/// The filter a run installs (`SeccompMode::Off`: none).
pub(crate) fn decide(
    policy: &Policy,
    host: &HostCapabilities,
    found: &mut Findings,
) -> SeccompMode {
    let p = &policy.privilege;
    let asked = p.seccomp.unwrap_or(SeccompMode::Default);
    if asked == SeccompMode::Off {
        return SeccompMode::Off;
    }
    if !host.seccomp_filter.is_available() {
        found.down(
            Layer::Privilege,
            format!(
                "privilege.seccomp = \"{}\": {}",
                name_of(&asked),
                reason(&host.seccomp_filter)
            ),
        );
        return SeccompMode::Off;
    }
    let known = super::KNOWN_SYSCALLS;
    let newest = known.last().map_or("none", |(name, _)| *name);
    found.mechanism(
        Layer::Privilege,
        match asked {
            SeccompMode::Strict => format!(
                "seccomp strict: an allowlist of {} of the {} known syscalls, other known ones fail with EPERM",
                super::STRICT_ALLOWED.len() + 3,
                known.len()
            ),
            _ => format!(
                "seccomp default: {} of the {} known syscalls refused (EPERM), TIOCSTI/TIOCLINUX, odd personalities and new user namespaces refused",
                super::DEFAULT_DENIED.len(),
                known.len()
            ),
        },
    );
    found.mechanism(
        Layer::Privilege,
        format!("seccomp: a syscall number newer than {newest} (or an x32 one) fails with ENOSYS"),
    );
    let mut families = vec!["unix", "inet", "inet6", "netlink (route, sock_diag)"];
    families.extend(p.socket_families.iter().flatten().map(|f| f.name()));
    found.mechanism(
        Layer::Privilege,
        format!(
            "seccomp: sockets of {} only, any other family fails with EAFNOSUPPORT",
            families.join(", ")
        ),
    );
    asked
}
