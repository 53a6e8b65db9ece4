// Each test binary compiles these modules separately and uses a part of them.
#![allow(dead_code)]

pub mod corpus;
pub mod fixtures;
pub mod package;
pub mod static_server;
