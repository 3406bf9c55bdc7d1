//! Fuzz target: any bytes through `midge_codec::decode` for MQTT 3.1, 3.1.1 and 5.0; every
//! packet decoded must round-trip through `encode` (see `src/check.rs` for the properties).

#![no_main]

use libfuzzer_sys::fuzz_target;

mod check {
    include!("../src/check.rs");
}

fuzz_target!(|data: &[u8]| {
    check::check_input(data);
});
