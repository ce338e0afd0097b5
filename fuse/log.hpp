// The daemon's log: syslog (background), stderr (foreground) or a file
// (-o log=FILE). Errors are rate-limited so a failing disk cannot flood it.
// Thread-safe.
#pragma once

#include <string>

namespace layer::fuse {

enum class LogTarget { Stderr, Syslog, File };

// Throws layer::Error if the log file cannot be opened.
void log_open(LogTarget target, const std::string& file, bool debug);
void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace layer::fuse
