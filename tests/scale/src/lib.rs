//! A generated module of 2,000 operations with random valid dependencies: proves the macro and the validator
//! scale. `SEQUENCER_SCALE_OPS=4000 cargo build -p sequencer-scale` changes the size.

include!(concat!(env!("OUT_DIR"), "/ops.rs"));

#[cfg(test)]
mod tests {
    #[test]
    fn the_generated_registry_is_valid_and_ordered() {
        let registry = super::ops::registry();
        let expected: usize = option_env!("SEQUENCER_SCALE_OPS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000);
        assert_eq!(registry.len(), expected);
        let order = registry.ordered().expect("valid");
        // Dependencies all point back in time, so the timestamp order is the execution order.
        assert!(order
            .windows(2)
            .all(|w| w[0].meta.timestamp < w[1].meta.timestamp));
        assert!(order.iter().any(|o| !o.meta.depends_on.is_empty()));
    }
}
