class _Platform:
    def is_rocm(self):
        return False

    def is_cuda(self):
        return False


current_platform = _Platform()
