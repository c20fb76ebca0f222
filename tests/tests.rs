mod config;
mod golden;
mod safety;
