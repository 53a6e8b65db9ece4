pub mod corpus;
pub mod fixtures;
pub mod static_server;
