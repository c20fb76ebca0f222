mod config;
mod daemon;
mod golden;
mod modbus;
mod safety;
mod grpc;
