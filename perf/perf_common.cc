#include "perf_common.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace epyard::perf {

std::vector<int> parseIntList(const char* text) {
  std::vector<int> v;
  for (const std::string& w : parseWordList(text)) v.push_back(std::atoi(w.c_str()));
  return v;
}

std::vector<std::string> parseWordList(const char* text) {
  std::vector<std::string> v;
  for (const char* p = text; *p;) {
    const char* end = std::strchr(p, ',');
    v.emplace_back(p, end ? static_cast<size_t>(end - p) : std::strlen(p));
    p = end ? end + 1 : p + std::strlen(p);
  }
  return v;
}

double nowUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

bool parseBytes(const char* text, size_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text) return false;
  unsigned long long mult = 1;
  if (*end == 'K' || *end == 'k')
    mult = 1ull << 10, ++end;
  else if (*end == 'M' || *end == 'm')
    mult = 1ull << 20, ++end;
  else if (*end == 'G' || *end == 'g')
    mult = 1ull << 30, ++end;
  if (*end != '\0') return false;
  *out = static_cast<size_t>(v * mult);
  return true;
}

bool Channel::sendAll(const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool Channel::recvAll(void* data, size_t len, int timeout_ms) {
  char* p = static_cast<char*>(data);
  while (len > 0) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

int runTwoProcesses(int (*fn)(int rank, Channel& ch, void* arg), void* arg, int timeout_s) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
    perror("socketpair");
    return 1;
  }
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) {
    perror("fork");
    return 1;
  }
  if (child == 0) {
    close(fds[0]);
    Channel ch{fds[1]};
    alarm(static_cast<unsigned>(timeout_s));
    _exit(fn(1, ch, arg));
  }
  close(fds[1]);
  Channel ch{fds[0]};
  int rc = fn(0, ch, arg);
  close(fds[0]);
  int status = 0;
  for (int waited = 0; waited < timeout_s * 10; ++waited) {
    pid_t r = waitpid(child, &status, WNOHANG);
    if (r == child) {
      bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok) fprintf(stderr, "perf: the second process failed (status 0x%x)\n", status);
      return (rc == 0 && ok) ? 0 : 1;
    }
    usleep(100000);
  }
  fprintf(stderr, "perf: the second process did not finish within %d s; killing it\n", timeout_s);
  kill(child, SIGKILL);
  waitpid(child, &status, 0);
  return 1;
}

}  // namespace epyard::perf
