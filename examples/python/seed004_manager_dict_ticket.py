# Seed 004, "Manger不写文件实现抢票": five buyers of one ticket in a
# Manager dict, the purchase under a Lock. The import is the one change.
from shmring import Process, Lock, Manager


def show(ticket):
    '''查票'''
    print(ticket, flush=True)
    print('当前剩余票数', ticket['count'], flush=True)


def buy(ticket):
    '''买票'''
    print(ticket, flush=True)
    count = ticket['count']
    if count > 0:
        count -= 1
        ticket['count'] = count
        print('抢票成功', flush=True)
    else:
        print('没有票', flush=True)


def task(lock, ticket):
    # print(ticket)
    show(ticket)
    lock.acquire()  # 安全问题需要自己另外加锁
    buy(ticket)
    lock.release()


if __name__ == '__main__':
    ticket = {'count': 1}
    m = Manager()
    sync_ticket = m.dict(ticket)
    lock = Lock()
    ps = []
    for i in range(5):
        p = Process(target=task, args=(lock, sync_ticket))
        p.start()
        ps.append(p)
    for p in ps:  # 必须要用join(),否则传入子进程的不是字典,不知道为什么
        p.join()
    print('最后余票', sync_ticket['count'], flush=True)
