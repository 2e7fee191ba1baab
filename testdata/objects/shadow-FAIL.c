/* A patch global named like a vmlinux export captures the module's own calls to it. */
void *__kmalloc(unsigned long size, unsigned int flags) { return (void *)(size + flags); }
