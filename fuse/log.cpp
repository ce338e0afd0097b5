#include "log.hpp"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "util/error.hpp"

namespace layer::fuse {

namespace {
std::mutex g_mu;  // guards g_file and the rate limiter
LogTarget g_target = LogTarget::Stderr;
FILE* g_file = nullptr;
bool g_debug = false;
time_t g_window = 0;
int g_in_window = 0;
constexpr int kMaxPerSecond = 20;

void vlog(int prio, const char* fmt, va_list ap) {
  std::lock_guard<std::mutex> g(g_mu);
  time_t now = ::time(nullptr);
  if (prio <= LOG_ERR) {
    if (now != g_window) {
      g_window = now;
      g_in_window = 0;
    }
    if (++g_in_window > kMaxPerSecond) return;
  }
  if (g_target == LogTarget::Syslog) {
    ::vsyslog(prio, fmt, ap);
    return;
  }
  FILE* f = g_target == LogTarget::File && g_file ? g_file : stderr;
  char ts[32];
  struct tm tm;
  ::gmtime_r(&now, &tm);
  std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::fprintf(f, "%s layerfs[%d]: ", ts, static_cast<int>(::getpid()));
  std::vfprintf(f, fmt, ap);
  std::fputc('\n', f);
  std::fflush(f);
}
}  // namespace

void log_open(LogTarget target, const std::string& file, bool debug) {
  std::lock_guard<std::mutex> g(g_mu);
  g_target = target;
  g_debug = debug;
  if (target == LogTarget::File) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw Error("log file '" + file + "'", errno);
    g_file = ::fdopen(fd, "a");
    if (!g_file) {
      ::close(fd);
      throw Error("log file '" + file + "'", errno);
    }
  } else if (target == LogTarget::Syslog) {
    ::openlog("layerfs", LOG_PID, LOG_DAEMON);
  }
}

void log_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(LOG_ERR, fmt, ap);
  va_end(ap);
}

void log_info(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(LOG_INFO, fmt, ap);
  va_end(ap);
}

void log_debug(const char* fmt, ...) {
  if (!g_debug) return;
  va_list ap;
  va_start(ap, fmt);
  vlog(LOG_DEBUG, fmt, ap);
  va_end(ap);
}

}  // namespace layer::fuse
