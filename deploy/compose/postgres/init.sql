-- One database per service (each owns its schema; services never share
-- tables). Runs once, when the postgres volume is created.
CREATE DATABASE catalog;
CREATE DATABASE orders;
CREATE DATABASE payments;
CREATE DATABASE notifications;
CREATE DATABASE search;
-- new-service: databases above this line
