pub mod export;
pub mod net;
