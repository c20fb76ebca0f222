mod config;
mod daemon;
mod golden;
mod grpc;
mod modbus;
mod safety;
