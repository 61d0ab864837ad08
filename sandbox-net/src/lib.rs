//! Sandbox egress, kernel side: a tap device made through `/dev/net/tun`
//! and configured over rtnetlink, and a default-drop nftables ruleset built
//! with libnftnl and installed over netlink — no `ip`, no `nft`.
//!
//! - [`create_tap`] and [`send_fd`]/[`recv_fd`]: the tap and its fd's way
//!   out of the sandbox.
//! - [`egress_steps`]: the steps a sandbox's child runs to make the inside
//!   of an egress namespace (the ruleset, the tap, its configuration, the
//!   tap's fd passed out), for `sandbox-child`'s executor; the run and
//!   [`EgressNamespace::create_rootless`] both use them.
//! - [`Requests`] and [`Rtnetlink`]: link, address and route configuration,
//!   as direct calls or as prebuilt bytes a sandbox's child sends.
//! - [`Ruleset`]: the egress ruleset a policy's `network` section asks for,
//!   as one atomic batch ([`Ruleset::install`], or
//!   [`Ruleset::batch`] bytes a sandbox's child sends), read back
//!   from the kernel with [`Ruleset::read_back`].
//!
//! ```
//! use sandbox_net::{Gateway, Ruleset};
//! use sandbox_policy::Policy;
//!
//! let policy = Policy::profile("networked")?;
//! let ruleset = Ruleset::from_network(&policy.network, &Gateway::default());
//! let batch = ruleset.batch().expect("libnftnl builds the batch");
//! assert!(batch.acks() > 5);
//! println!("{ruleset}"); // the same ruleset in nft syntax
//! # Ok::<(), sandbox_policy::Error>(())
//! ```
#![deny(missing_docs)]

mod egress;
mod error;
pub mod forward;
mod namespace;
mod nft;
mod rtnl;
mod sys;
mod tap;

pub use egress::{EgressAddressing, EgressNamespace, TAP_INDEX, egress_steps, tap_setup};
pub use error::{Error, Result};
pub use namespace::{
    current_network_namespace, enter_network_namespace, unshare_network_namespace,
};
pub use nft::{
    CidrSet, Gateway, KernelRuleset, MAX_HOST_RULES, METADATA_BLOCKS, Match, NftBatch, PinSet,
    PinUpdate, REFUSE_CHAIN, RuleSpec, Ruleset, SET_THRESHOLD, TABLE, Verdict, ipv4_mapped,
    pin_batch,
};
pub use rtnl::{AddressState, Link, LinkChange, LinkState, Requests, RouteState, Rtnetlink};
pub use tap::{
    MAX_NAME_LEN, TapOptions, VNET_HDR_LEN, create_tap, enable_offloads, has_vnet_hdr, recv_fd,
    send_fd,
};
