// Package mountinfo reads this process's mount table
// (/proc/self/mountinfo). The daemon needs it to tell a free mountpoint
// from a busy one and to count the dead mounts a killed daemon stacked at
// one directory; tests need it to check that a stopped daemon left no
// mount behind, dead or alive, which statfs alone cannot tell.
package mountinfo
