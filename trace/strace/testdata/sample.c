// sample.c is a small deterministic program whose strace output is
// sample.strace. record.sh builds it, lays out ROOT/show and records it;
// TestImportRecordedSample asserts the exact events. Each step exercises
// one thing the importer must reconstruct; the comments give the event it
// must produce (paths relative to ROOT/show).
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static char buf[16384];

static void *thread_main(void *arg) {
	(void)arg;
	int fd = open("show/sub/c.png", O_RDONLY | O_CLOEXEC); // open sub/c.png
	read(fd, buf, 1000);                                    // off 0 n 1000
	chdir("show/sub");                                      // CLONE_FS: moves the main thread too
	return (void *)(long)fd;
}

static int after_exec(int keep, int dropped) {
	read(keep, buf, 10);    // b.vdb off 10: the description survived exec
	read(dropped, buf, 10); // EBADF: close-on-exec closed it; no event
	return 0;
}

int main(int argc, char **argv) {
	if (argc == 4 && strcmp(argv[1], "after-exec") == 0)
		return after_exec(atoi(argv[2]), atoi(argv[3]));
	struct stat st;
	stat("show/missing.exr", &st); // stat missing.exr ENOENT
	access("show/a.exr", R_OK);    // access a.exr (relative, no dirfd)

	// read() offsets through read, pread, lseek and dup.
	int fd = open("show/a.exr", O_RDONLY); // open a.exr fh 3, size 10000 (from fstat)
	fstat(fd, &st);
	read(fd, buf, 100);       // off 0 len 100
	read(fd, buf, 4096);      // off 100 len 4096
	pread(fd, buf, 50, 8000); // off 8000; the file offset stays 4196
	lseek(fd, 9000, SEEK_SET);
	read(fd, buf, 4096); // off 9000 n 1000
	read(fd, buf, 4096); // off 10000 n 0 (EOF)
	lseek(fd, -500, SEEK_END);
	int fd2 = dup(fd);   // fh 4 shares the description
	read(fd2, buf, 200); // fh 4 off 9500
	lseek(fd2, 1000, SEEK_SET);
	read(fd, buf, 10); // fh 3 off 1000: fd 4's seek moved it

	// fork copies the fd table but shares descriptions; cwd is copied.
	pid_t pid = fork();
	if (pid == 0) {
		read(fd, buf, 100); // child: off 1010
		chdir("show/sub");
		access("c.png", R_OK); // child: sub/c.png
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	read(fd, buf, 10);              // off 1110: the child's read moved it
	access("show/b.vdb", R_OK);     // the child's chdir is not ours
	close(fd2);                     // close fh 4
	close(fd);                      // close fh 3

	// vfork: strace prints the child's calls before vfork returns.
	fd = open("show/b.vdb", O_RDONLY); // open b.vdb fh 3 size 8192
	pid = vfork();
	if (pid == 0) {
		read(fd, buf, 5); // child: off 0
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	read(fd, buf, 5); // off 5
	fstat(fd, &st);
	char *m = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);   // mmap off 0 len 8192
	char *m2 = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 4096); // mmap off 4096 len 4096
	volatile char touch = m[100] + m2[0];
	(void)touch;
	munmap(m, 8192);
	munmap(m2, 4096);
	close(fd);

	// A thread shares the fd table and the cwd.
	pthread_t th;
	void *ret;
	pthread_create(&th, NULL, thread_main, NULL);
	pthread_join(th, &ret);
	fd = (int)(long)ret;
	read(fd, buf, 1000);   // sub/c.png off 1000: the thread read the first 1000
	access("c.png", R_OK); // sub/c.png: the thread's chdir moved us
	chdir("../..");
	close(fd);

	// One readdir event per listing, however many getdents64 calls.
	DIR *d = opendir("show"); // open show dir
	while (readdir(d))
		;
	closedir(d);

	// dirfd-relative paths, readv and preadv.
	int dfd = open("show/sub", O_RDONLY | O_DIRECTORY); // open sub dir
	fd = openat(dfd, "../a.exr", O_RDONLY);              // open a.exr
	struct iovec iov[2] = {{buf, 10}, {buf + 10, 20}};
	readv(fd, iov, 2);       // off 0 n 30
	preadv(fd, iov, 2, 100); // off 100 n 30
	readv(fd, iov, 2);       // off 30 n 30
	close(fd);
	close(dfd);

	// A name strace must escape.
	fd = open("show/q\"uote\\d \xc3\xa9.txt", O_RDONLY);
	read(fd, buf, 4096); // n 100
	close(fd);
	readlink("show/link", buf, sizeof buf); // n 5
	lstat("show/link", &st);                // a symlink: no size
	stat("show/sub", &st);                  // a directory

	// An output file: the open is marked as a write.
	fd = open("show/out.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	close(fd);

	// exec keeps fds without close-on-exec (and their offsets) and
	// closes the rest.
	int keep = open("show/b.vdb", O_RDONLY);             // fh 3
	int drop = open("show/a.exr", O_RDONLY | O_CLOEXEC); // fh 4
	int drop2 = fcntl(keep, F_DUPFD_CLOEXEC, 5);         // fd 5, close-on-exec
	(void)drop;
	read(keep, buf, 10); // off 0
	char a1[16], a2[16];
	snprintf(a1, sizeof a1, "%d", keep);
	snprintf(a2, sizeof a2, "%d", drop2);
	execl("/proc/self/exe", argv[0], "after-exec", a1, a2, (char *)NULL);
	return 1;
}
