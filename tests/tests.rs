mod config;
mod daemon;
mod full_disk;
mod fuzz;
mod golden;
mod grpc;
mod modbus;
mod safety;
