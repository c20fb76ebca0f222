mod config;
mod daemon;
mod golden;
mod safety;
