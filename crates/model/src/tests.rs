mod job;
mod practice;
