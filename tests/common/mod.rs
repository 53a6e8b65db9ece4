pub mod fixtures;
pub mod static_server;
