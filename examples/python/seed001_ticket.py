# Seed 001, "模拟抢票练习" with the lock: five buyers, one ticket in db.txt,
# only one buys it. As the seed writes it; the import is the one change
# (sleeps of 0.2 s instead of 2 s, and db.txt written first).
from shmring import Process, Lock
import json, time


def search(name):
    dic = json.load(open('db.txt', 'r', encoding='utf-8'))
    print('<%s> 查到的余票数 [%s]' % (name, dic['count']), flush=True)


def get(name, lock):
    time.sleep(0.2)  # 模拟读数据的网络延迟
    dic = json.load(open('db.txt', 'r', encoding='utf-8'))
    if dic['count'] > 0:
        dic['count'] -= 1
        time.sleep(0.2)  # 模拟读数据的网络延迟
        json.dump(dic, open('db.txt', 'w', encoding='utf-8'))
        print('<%s> 购票成功' % name, flush=True)


def task(name, lock):
    search(name)
    with lock:  # 相当于lock.acquire(),执行完自代码块自动执行lock.release()
        get(name, lock)


if __name__ == '__main__':
    json.dump({"count": 1}, open('db.txt', 'w', encoding='utf-8'))
    lock = Lock()
    for i in range(5):  # 模拟并发5个客户端抢票
        p = Process(target=task, args=('路人%s' % i, lock))
        p.start()
