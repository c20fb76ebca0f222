mod config;
mod daemon;
mod full_disk;
mod golden;
mod grpc;
mod modbus;
mod safety;
