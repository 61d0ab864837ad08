//! The model's unit tests.

use super::*;
use sandbox_policy::Policy;

fn ruleset(toml: &str) -> Ruleset {
    let policy = Policy::from_toml_str(toml).unwrap();
    Ruleset::from_network(&policy.network, &Gateway::default())
}

#[test]
fn order_is_loopback_established_blocks_denies_dns_allows() {
    let rs = ruleset(
        "[network]\nmode = \"allowlist\"\ndns = true\nallow = [\"198.51.100.0/24:443/tcp\"]\ndeny = [\"198.51.100.13/32\"]\n",
    );
    let text: Vec<String> = rs.output.iter().map(|r| rule_text(r, true)).collect();
    assert_eq!(text[0], "oifname \"lo\" accept");
    assert_eq!(text[1], "ct state established,related accept");
    assert_eq!(text[2], "icmpv6 type 130-143 accept");
    let position = |needle: &str| {
        text.iter()
            .position(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {text:#?}"))
    };
    let metadata = position("169.254.0.0/16 goto refuse");
    let mapped_metadata = position("::ffff:169.254.0.0/112 goto refuse");
    let deny = position("198.51.100.13/32 goto refuse");
    let mapped_deny = position("::ffff:198.51.100.13/128 goto refuse");
    let dns = position("10.0.2.2/32 udp dport 53 accept");
    let allow = position("198.51.100.0/24 tcp dport 443 accept");
    assert!(metadata < mapped_metadata && mapped_metadata < deny);
    assert!(deny < mapped_deny && mapped_deny < dns && dns < allow);
    // Everything else: refused out loud (a reset or ICMP prohibited).
    assert_eq!(text.last().map(String::as_str), Some("goto refuse"));
    assert_eq!(text.len(), allow + 2);
    assert_eq!(rs.input.len(), 3);
}

#[test]
fn allow_metadata_lifts_the_always_on_blocks() {
    let blocked = ruleset("[network]\nmode = \"allowlist\"\n");
    let lifted = ruleset("[network]\nmode = \"allowlist\"\nallow_metadata = true\n");
    assert_eq!(
        blocked.output.len(),
        3 + 6 + 1,
        "4 blocks + 2 IPv4-mapped forms, and the final refusal"
    );
    assert_eq!(lifted.output.len(), 3 + 1);
}

#[test]
fn ports_without_a_protocol_mean_tcp_and_udp() {
    let rs = ruleset("[network]\nallow_metadata = true\nallow = [\"192.0.2.1/32:80-90\"]\n");
    let text: Vec<String> = rs.output.iter().map(|r| rule_text(r, true)).collect();
    assert_eq!(
        text[3..],
        [
            "ip daddr 192.0.2.1/32 tcp dport 80-90 accept",
            "ip daddr 192.0.2.1/32 udp dport 80-90 accept",
            "goto refuse"
        ]
    );
}

#[test]
fn masks_and_mapped_forms() {
    assert_eq!(prefix_mask(12, 4), [0xff, 0xf0, 0, 0]);
    assert_eq!(prefix_mask(0, 2), [0, 0]);
    assert_eq!(prefix_mask(128, 16), [0xff; 16]);
    let v4 = IpNet::new("100.100.100.200".parse().unwrap(), 32).unwrap();
    let mapped = ipv4_mapped(v4).unwrap();
    assert_eq!(mapped.to_string(), "::ffff:100.100.100.200/128");
    assert!(ipv4_mapped(mapped).is_none());
}

#[test]
fn the_batch_asks_an_ack_per_message() {
    let rs = ruleset("[network]\nmode = \"allowlist\"\n");
    let batch = rs.batch().unwrap();
    // The ACKs the kernel sends: one per message libnftnl flagged, counted
    // from the bytes (whether begin and end are flagged depends on
    // libnftnl's check of the running kernel). At least the table, 3
    // chains and the rules (chain `refuse` has 3); the replacing batch
    // adds a table and its deletion.
    let flagged = |b: &crate::NftBatch| b.acks() as usize;
    assert!(flagged(&batch) >= 4 + rs.output.len() + rs.input.len() + 3);
    assert_eq!(flagged(&rs.replace_batch().unwrap()), flagged(&batch) + 2);
    assert_eq!(
        batch.rules().unwrap().len(),
        rs.output.len() + rs.input.len() + 3
    );
    let text = rs.to_string();
    assert!(
        text.contains("  chain refuse {\n    log group 1 snaplen 96\n    meta l4proto tcp reject with tcp reset\n    reject with icmpx admin-prohibited\n  }"),
        "{text}"
    );
}
