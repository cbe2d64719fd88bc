#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| topicbus_fuzz::headers(data));
