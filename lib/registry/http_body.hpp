// HttpBody: a request body for uploads (PUT, POST, PATCH), read by curl as
// it sends and rewound for every retry. StringBody holds small documents;
// FileBody reads a range of a file with pread, so one fd serves several
// bodies. Owned by the request (shared_ptr); one transfer reads it at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

namespace layer::registry {

class HttpBody {
 public:
  virtual ~HttpBody() = default;
  virtual uint64_t size() const = 0;
  // Up to n bytes; 0 only at the end. Throws Error.
  virtual size_t read(char* buf, size_t n) = 0;
  virtual void rewind() = 0;
};

class StringBody : public HttpBody {
 public:
  explicit StringBody(std::string data) : data_(std::move(data)) {}
  uint64_t size() const override { return data_.size(); }
  size_t read(char* buf, size_t n) override;
  void rewind() override { pos_ = 0; }

 private:
  std::string data_;
  size_t pos_ = 0;
};

class FileBody : public HttpBody {
 public:
  // Bytes [offset, offset + len) of `fd` (borrowed). `progress` gets the
  // bytes of this body sent so far.
  FileBody(int fd, off_t offset, uint64_t len, std::string what,
           std::function<void(uint64_t)> progress = {});
  uint64_t size() const override { return len_; }
  size_t read(char* buf, size_t n) override;
  void rewind() override { pos_ = 0; }

 private:
  int fd_;
  off_t offset_;
  uint64_t len_;
  uint64_t pos_ = 0;
  std::string what_;
  std::function<void(uint64_t)> progress_;
};

}  // namespace layer::registry
